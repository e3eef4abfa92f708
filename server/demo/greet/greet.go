// Package greet builds greetings.
package greet

import "fmt"

// Greeter formats greetings with a fixed punctuation mark.
type Greeter struct {
	Mark string
}

// Hello returns a greeting for name.
func (g Greeter) Hello(name string) string {
	return fmt.Sprintf("Hello, %s%s", name, g.Mark)
}
