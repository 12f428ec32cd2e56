"""The Gradio studio: a thin layer over `pipeline`, one module per tab."""
