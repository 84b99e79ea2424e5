"""Local development: emulators, scenario generator and a template-driven runtime."""
