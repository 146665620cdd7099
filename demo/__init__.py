"""The built-in demo (`./scripts/demo`): a local "hub", a private mirror, two syncs."""
