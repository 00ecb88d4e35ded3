"""Entry points: the `nova` command (deployments.cli), the embedded stack
(deployments.stack), the Serve application (deployments.app) and the worker actors
(deployments.workers). Nothing else in Nova imports this package."""
