"""Run the o11y-box stack without Docker: same binaries-by-version, same config files as compose."""
