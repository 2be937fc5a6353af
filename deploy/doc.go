// Package deploy has no code of its own. Its tests hold the deployment files at the root of
// the module — docker-compose.yml, Dockerfile and .dockerignore — to the binary they deploy:
// service names, health checks and start order, the SELFRESET_* environment (every variable
// one the binary reads, and the set accepted by config.FromEnv),
// and an image that runs the static binary as a non-root user without a shell.
//
// No Docker engine runs where these tests run (developers' machines and CI have the docker
// CLI at most), so they build no image and start no container: they parse the files and
// check the wiring. `docker compose up --build` (docs/operations.md) is the end-to-end check.
package deploy
