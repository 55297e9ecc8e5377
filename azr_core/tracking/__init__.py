"""MLflow, as a run and the registry see it: `store` (the tracking settings, the store's URI, a client; quick to
import), `runs` (one MLflow run per run folder: params, metrics, registered checkpoints) and `registry` (aliases and
registered versions as local model folders, outside any training run)."""
