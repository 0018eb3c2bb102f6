"""How a service process runs: its event loop, forked front doors and start-up checks."""
