"""Downloads: pinned npm packages, Hugging Face hub files, and the plan of what a configuration
would fetch and cannot. Imports only the ground (pipeline.errors, pipeline.paths)."""
