"""Real stand-ins the tests start on loopback (D1's REST API, wrangler's local D1) and the databases they build."""
