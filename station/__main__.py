from station.cli import main

main()
