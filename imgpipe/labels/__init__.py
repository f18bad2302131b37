"""Label import: any supported label source to one frozen, checked label table (the labels stage)."""
