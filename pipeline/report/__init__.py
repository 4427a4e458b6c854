"""Presentation: figures and the review page. Reads what the stages wrote; computes nothing new."""
