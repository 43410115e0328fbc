"""The scheduler: scheduled notebooks, locks, ticks, chaining and backfills."""
