# Build the one-folder ctviewer application on Windows with PyInstaller.
#
#   powershell -ExecutionPolicy Bypass -File packaging\build.ps1 [-Clean]
#
# Needs a venv with ctviewer's dependencies and PyInstaller:
#   py -3.11 -m venv .venv ; .venv\Scripts\pip install -e ".[package]"
# Result: dist\ctviewer\ctviewer.exe (no console window) and dist\ctviewer\ctviewer-cli.exe
# (console, for `ctviewer-cli scan ...` and `--self-test`). Work files: build\.
# Not tested on Windows by the team yet: see packaging\README.md.
param([switch]$Clean)
$ErrorActionPreference = "Stop"
$Root = Split-Path -Parent $PSScriptRoot
Set-Location $Root

$Python = if ($env:PYTHON) { $env:PYTHON } elseif (Test-Path ".venv\Scripts\python.exe") { ".venv\Scripts\python.exe" } else { "py" }
& $Python -c "import PyInstaller" 2>$null
if ($LASTEXITCODE -ne 0) { throw "PyInstaller is missing: $Python -m pip install -e "".[package]""" }

$env:TF_CPP_MIN_LOG_LEVEL = "2"
$PyiArgs = @("-m", "PyInstaller", "--noconfirm", "--distpath", "dist", "--workpath", "build")
if ($Clean) { $PyiArgs += "--clean" }
$Watch = [Diagnostics.Stopwatch]::StartNew()
& $Python @PyiArgs "packaging\ctviewer.spec"
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }
"build took {0:N0} s" -f $Watch.Elapsed.TotalSeconds

$Size = (Get-ChildItem -Recurse "dist\ctviewer" | Measure-Object -Property Length -Sum).Sum / 1GB
"bundle dist\ctviewer is {0:N2} GiB" -f $Size

$env:QT_QPA_PLATFORM = "offscreen"
& "dist\ctviewer\ctviewer-cli.exe" --version
& "dist\ctviewer\ctviewer-cli.exe" --self-test
if ($LASTEXITCODE -ne 0) { throw "self-test failed" }
"self-test passed"
