"""Ranking: feature definitions, candidate sources, model formats, the registry and A/B
routing. It arrives with the ranked-feed issue; nothing is exported yet."""
