from grporm.cli import app

app(prog_name="grporm")
