from router.cli.commands import main

main()
