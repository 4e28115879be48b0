"""Hardware description shared by the firmware and the schematic tests (pin map, parts)."""
