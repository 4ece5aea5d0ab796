"""The secagg demo as a Flower app: ``server_app`` (SecAgg+ FedAvg) and ``client_app``
(DP-SGD local training behind the secure-aggregation client mod)."""
