from speechrole.cli import main

main()
