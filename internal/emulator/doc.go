// Package emulator holds local stand-ins for the Azure services Tapline talks
// to, built from the recorded contracts in shared/reference/azure-contracts.md.
package emulator
