"""dp: differential privacy for federated learning (client DP-SGD, DP-FedAvg, accounting,
the per-round privacy ledger and budget guard, empirical audits)."""

__all__: list[str] = []
