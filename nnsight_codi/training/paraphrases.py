"""The instruction paraphrases of the tiny instruct models (v2 and v3): trained and held out, per mode.

Trained: 26 ways of asking for the steps ("cot") and 26 of asking for the answer alone
("direct"), among them indirect phrasings ("I want to see how you get the answer .") and mixed
ones that name the other mode to refuse it ("Do not think step by step , answer immediately ." is
a *direct* instruction), so that no word alone decides the mode. Held out (never trained, built
from words the trained ones use, in new combinations): 6 per mode. The first of each trained list
is the CoT-steering paper's instruction (the canonical one, `instruct.COT_INSTRUCTION` /
`DIRECT_INSTRUCTION`).

v3 (`tiny-instruct`, shipped) trains 6 + 6 more negated phrasings on top (`COT_NEGATED`,
`DIRECT_NEGATED`): v2 misread the two negated held-out phrasings, so v3 sees a negation of each
mode's words ("Do not reply directly , …", "No reasoning , …") in more combinations. The held-out
lists are unchanged, so both models are measured on the same unseen phrasings.

    >>> len(COT_TRAIN), len(DIRECT_TRAIN), len(COT_HELDOUT), len(DIRECT_HELDOUT)
    (26, 26, 6, 6)
    >>> set(COT_HELDOUT + DIRECT_HELDOUT) & set(COT_TRAIN + DIRECT_TRAIN + COT_NEGATED + DIRECT_NEGATED)
    set()
"""

from ..instruct import COT_INSTRUCTION, DIRECT_INSTRUCTION

COT_TRAIN = [
    COT_INSTRUCTION,
    "Think step by step .",
    "Let us think step by step .",
    "Solve it step by step .",
    "Show your work .",
    "Show your reasoning before the answer .",
    "Work through the problem one step at a time .",
    "Explain each step , then give the answer .",
    "Write out every step of the calculation .",
    "Reason carefully and show each step .",
    "Break the problem into steps and solve each one .",
    "Please show all the steps .",
    "Walk me through your reasoning .",
    "Take it one step at a time .",
    "First write the steps , then the answer .",
    "Show the calculation step by step .",
    "Go through it step by step .",
    "Explain your reasoning .",
    "Solve this carefully , showing your work .",
    "Think it through before you answer .",
    "I want to see how you get the answer .",
    "Give a detailed solution .",
    "Do not answer immediately , think step by step .",
    "Do not just give the number , show the steps .",
    "Do not skip any steps .",
    "Think first , answer after .",
]

DIRECT_TRAIN = [
    DIRECT_INSTRUCTION,
    "Answer immediately .",
    "Just give the answer .",
    "Give only the final answer .",
    "No explanation , just the number .",
    "Answer directly .",
    "Reply with the answer only .",
    "Do not show your work .",
    "Skip the steps and give the answer .",
    "Be brief : only the answer .",
    "Answer quickly , without any steps .",
    "Give the number and nothing else .",
    "Do not think step by step , answer immediately .",
    "Do not explain , just answer .",
    "Only the answer , please .",
    "I only need the final number .",
    "Answer in one line without reasoning .",
    "Give the answer right away .",
    "No steps , no explanation .",
    "Tell me the answer directly .",
    "Do not write the steps .",
    "Answer at once .",
    "State the final answer only .",
    "Without elaboration , give the answer .",
    "Do not reason , just reply .",
    "The number only .",
]

COT_HELDOUT = [
    "Please think through each step before you answer .",
    "Show each step of your reasoning .",
    "Solve the problem carefully , one step at a time .",
    "Explain how you get the answer , step by step .",
    "Do not answer directly , show your work .",
    "Write the calculation , then the answer .",
]

DIRECT_HELDOUT = [
    "Please give the answer only , without steps .",
    "Just the final number , no reasoning .",
    "Answer right away , without reasoning .",
    "Do not show the steps , just answer directly .",
    "Skip the explanation and reply with the number .",
    "Give the answer quickly .",
]

COT_NEGATED = [  # v3: CoT instructions that refuse the direct mode in words the direct ones use
    "Do not reply directly , explain each step .",
    "Do not give the number right away , show your reasoning .",
    "Do not answer in one line , show all the steps .",
    "Do not skip the reasoning , solve it step by step .",
    "Do not only give the answer , explain your reasoning .",
    "Do not answer quickly , think it through .",
]

DIRECT_NEGATED = [  # v3: direct instructions that refuse the CoT mode in words the CoT ones use
    "No reasoning , only the answer .",
    "The answer only , no steps .",
    "Give the number , no explanation .",
    "Do not explain your reasoning , give the number .",
    "Do not think it through , just answer .",
    "Without steps , reply with the number .",
]
