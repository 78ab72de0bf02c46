"""The `o11y` stack CLI: status, load, compare, scenario, chaos and drill over the compose or native stack."""
