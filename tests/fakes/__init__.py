"""Stand-ins for libraries that need hardware we do not always have."""
