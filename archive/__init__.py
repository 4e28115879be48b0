"""The unit's evidence system: case files, people and roles, audit log, copies for the parties."""
