from alerts import evaluation, sending


def send_due() -> str:
    return f"{sending.send_due()} notifications sent"


def evaluate() -> str:
    return f"{len(evaluation.evaluate_scheduled())} alert transitions"
