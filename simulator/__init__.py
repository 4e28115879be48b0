"""A twin of the camera's hardware: GPIO, camera, microphone, battery, faults, cable, clock."""
