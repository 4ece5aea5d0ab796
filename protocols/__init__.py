"""protocols: composition of the mechanisms (FedAvg rounds, drivers, the CLI)."""

__all__: list[str] = []
