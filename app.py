"""python app.py → launches the studio on the embedded default model."""
import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> None:
    from pipeline.models import DEFAULT_MODEL

    parser = argparse.ArgumentParser(description="Constitution Studio")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--workspace", default=None,
                        help="workspace folder (default: $CONSTITUTION_STUDIO_WORKSPACE or ./workspace)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="default model: 'embedded', a local folder or a hub id")
    args = parser.parse_args()
    from studio.app import launch

    launch(args.host, args.port, args.workspace, args.model)


if __name__ == "__main__":
    main()
