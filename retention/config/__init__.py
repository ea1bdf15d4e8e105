"""Configuration: YAML files validated once into frozen objects, errors naming file:line: key."""
