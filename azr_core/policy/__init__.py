"""The policy: the model, its rollout backends and its trainer. Framework-free (no Prefect here)."""
