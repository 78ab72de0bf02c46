"""Rules: the safe expression language, the segmented rule repository and the evaluator."""
