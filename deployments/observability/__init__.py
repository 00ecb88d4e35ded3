"""What an operator watches Nova with: Prometheus's recording and alert rules (`rules.yml`,
loaded by the embedded Prometheus) and a Grafana dashboard (`grafana/nova.json`) for
operators who bring Grafana. Files only: nothing here runs."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
RULES_FILE = HERE / "rules.yml"
GRAFANA_DASHBOARD = HERE / "grafana" / "nova.json"

__all__ = ["GRAFANA_DASHBOARD", "RULES_FILE"]
