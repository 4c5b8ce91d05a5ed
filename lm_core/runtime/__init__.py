"""asyncio runtime: transport, store, daemon, client and admin libraries."""
