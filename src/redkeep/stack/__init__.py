"""Running the bundle's processes on this machine, without Docker (`redkeep up`/`down`)."""
