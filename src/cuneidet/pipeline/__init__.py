"""cuneidet.pipeline: the iterative weak-supervision loop (lines → align → place → retrain)."""
