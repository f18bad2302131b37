"""Privacy and provenance: pseudonymous annotators, metadata scan and strip, take-downs, faces."""
