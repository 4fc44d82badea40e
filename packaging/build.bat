@echo off
rem Double-clickable wrapper around build.ps1 (Windows). See packaging\README.md.
powershell -NoProfile -ExecutionPolicy Bypass -File "%~dp0build.ps1" %*
if errorlevel 1 pause
