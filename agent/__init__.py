"""Agent side of synchub: data model, config, clock models, alignment, pipeline, transport, collector."""
