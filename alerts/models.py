# Alert rules, channels and history arrive with the alerts issue; the app exists so
# that its place in the layout (alerts depends on monitoring, never the reverse) is set.
