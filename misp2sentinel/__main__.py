from misp2sentinel.cli import main

main()
