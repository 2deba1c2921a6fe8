"""sortloop operator console (Gradio, mounted at /ui of the station's app)."""
