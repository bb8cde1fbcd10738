from routing_app.cli import main

main()
