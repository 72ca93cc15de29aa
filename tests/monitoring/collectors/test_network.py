"""The network collector against this machine: invariants that hold whatever the traffic."""

from monitoring.collectors import network


def test_byte_counters_are_non_negative():
    for nic in network.collect().interfaces:
        assert nic.rx_bytes >= 0
        assert nic.tx_bytes >= 0


def test_each_interface_is_listed_once():
    names = [nic.name for nic in network.collect().interfaces]
    assert len(names) == len(set(names))


def test_link_state_is_up_down_or_unknown():
    for nic in network.collect().interfaces:
        assert nic.is_up in (True, False, None)
