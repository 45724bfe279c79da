from etlnorm.cli import main

main()
