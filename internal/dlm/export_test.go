package dlm

// CheckSnapshot exposes the invariant checker to the external tests.
var CheckSnapshot = checkSnapshot

// RaceEnabled reports whether the tests run with the race detector (which
// makes them about ten times slower: long tests do less then).
const RaceEnabled = raceEnabled
