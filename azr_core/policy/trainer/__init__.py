"""Policy updates: the REINFORCE++ loss, the DeepSpeed engine, its worker processes and checkpoints."""
