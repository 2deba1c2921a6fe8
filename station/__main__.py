from station.cli import main

if __name__ == "__main__":  # a spawned worker process (the console's hash worker) imports this module again
    main()
