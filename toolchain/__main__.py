from edgekit.cli import main

if __name__ == "__main__":  # importing this module (spawn children, tools) must not run the CLI
    main()
