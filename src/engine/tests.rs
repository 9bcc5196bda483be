//! Engine tests: scripted event sequences, assertions on the actions.
