"""What every stage shares and that imports nothing else of llmpipe: the user-error convention
(`errors`), logging and the stage summary line (`log`), atomic outputs (`atomic`), the strict
params loader core (`config`), seeded hashing (`seeds`) and the worker-count rule (`workers`)."""
