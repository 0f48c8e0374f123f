"""Settings, database wiring and migrations. Imports nothing of ours."""
