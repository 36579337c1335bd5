from lethe.cli import main

if __name__ == "__main__":  # not when a child process of the worker imports it (lethe.prewarm)
    raise SystemExit(main())
