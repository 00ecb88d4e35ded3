"""Ranking: the feature schema and the online features in Redis, candidate sources, model
formats and scoring, the model registry with A/B routing, author diversity, and offline
training and reports from logged impressions. The Serve deployments that serve it live in
`deployments.ranking`; the data scientist's commands in `deployments.cli.models`."""
