"""Ray actors that own live state: timeline, chat and counter shards, and the key→shard
directory. Each shard is a plain class with a thin `@ray.remote` wrapper (see STYLE.md).
The shards arrive with the issues that introduce them; nothing is exported yet."""
